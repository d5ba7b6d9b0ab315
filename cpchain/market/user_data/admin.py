from django.contrib import admin

from cpchain.market.user_data.models import Bookmark, PurchasedFile, UploadedFile

for model in (UploadedFile, PurchasedFile, Bookmark):
    admin.site.register(model)
