from django.urls import path

from cpchain.market.comment import views

urlpatterns = [
    path("comments/", views.ReviewListView.as_view()),
    path("comments/<int:review_id>/", views.ReviewDetailView.as_view()),
    path("summary/", views.SummaryView.as_view()),
]
