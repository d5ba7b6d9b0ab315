from __future__ import annotations

from django.db import models


class Curated(models.Model):
    name = models.CharField(max_length=100, blank=True, default="")
    image = models.CharField(max_length=512, blank=True, default="")  # http(s) URL
    link = models.CharField(max_length=512, blank=True, default="")  # http(s) URL or a market hash
    position = models.IntegerField(default=0)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name or self.link


class Carousel(Curated):
    pass


class Promotion(Curated):
    pass


class HotTag(models.Model):
    tag = models.CharField(max_length=40, unique=True)
    image = models.CharField(max_length=512, blank=True, default="")
    position = models.IntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.tag
