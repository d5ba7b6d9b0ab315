from django.urls import path

from cpchain.market.product import views
from cpchain.market.product.models import Visibility

MH = "<str:market_hash>"

urlpatterns = [
    path("products/", views.ProductListView.as_view()),
    path(f"products/{MH}/", views.ProductDetailView.as_view()),
    path(f"products/{MH}/hide/", views.VisibilityView.as_view(target=Visibility.HIDDEN)),
    path(f"products/{MH}/show/", views.VisibilityView.as_view(target=Visibility.VISIBLE)),
    path(f"products/{MH}/cover/", views.CoverView.as_view()),
    path("search/", views.SearchView.as_view()),
    path("my_products/", views.MyProductsView.as_view()),
    path("recommend/", views.RecommendView.as_view()),
    path("you_may_like/", views.YouMayLikeView.as_view()),
    path("my_tags/", views.FollowedTagsView.as_view()),
    path("my_tags/products/", views.FollowedTagProductsView.as_view()),
    path("my_tags/<str:tag>/", views.FollowedTagDetailView.as_view()),
    path("my_sellers/", views.FollowedSellersView.as_view()),
    path("my_sellers/products/", views.FollowedSellerProductsView.as_view()),
    path("my_sellers/<str:seller>/", views.FollowedSellerDetailView.as_view()),
]
