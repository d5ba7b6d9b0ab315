from django.urls import path
from rest_framework.routers import SimpleRouter

from cpchain.market.main import views

router = SimpleRouter()
router.register("carousel", views.CarouselViewSet, basename="carousel")
router.register("promotions", views.PromotionViewSet, basename="promotion")
router.register("hot_tags", views.HotTagViewSet, basename="hottag")

urlpatterns = [path("trending_tags/", views.TrendingTagsView.as_view()), *router.urls]
