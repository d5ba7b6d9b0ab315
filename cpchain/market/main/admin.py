from django.contrib import admin

from cpchain.market.main.models import Carousel, HotTag, Promotion

admin.site.register(Carousel)
admin.site.register(Promotion)
admin.site.register(HotTag)
