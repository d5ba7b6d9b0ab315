"""The market's URL map: one prefix per resource, as in the 2018 market, plus the schema."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from cpchain.market import api, schema  # noqa: F401  (schema registers the auth scheme)

urlpatterns = [
    path("account/v1/", include("cpchain.market.account.urls")),
    path("product/v1/", include("cpchain.market.product.urls")),
    path("comment/v1/", include("cpchain.market.comment.urls")),
    path("user_data/v1/", include("cpchain.market.user_data.urls")),
    path("main/v1/", include("cpchain.market.main.urls")),
    path("records/v1/", include("cpchain.market.records.urls")),
    path("proxy/v1/", include("cpchain.market.proxy.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("health/", api.health),
    path("admin/", admin.site.urls),
]

handler400 = api.handler400
handler403 = api.handler403
handler404 = api.handler404
handler500 = api.handler500
