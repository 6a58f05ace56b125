"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ddpui.settings")
application = get_wsgi_application()
# import the URL conf (every API module) now, as the server loads the app, rather than in the first request each
# process serves (about half a second on 2 cores)
_url_patterns = get_resolver().url_patterns
