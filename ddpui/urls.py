from django.contrib import admin
from django.urls import path

from ddpui.api.core import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
