from django.contrib import admin
from django.urls import path

from ddpui import webhooks
from ddpui.api.core import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("webhooks/v1/notification/", webhooks.notification, name="webhook-notification"),
]
