"""The WSGI application served by gunicorn (bin/market-start)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpchain.market.settings")
application = get_wsgi_application()
