from django.urls import path

from cpchain.market.records import views

urlpatterns = [
    path("orders/", views.OrderListView.as_view()),
    path("orders/<int:order_id>/", views.OrderDetailView.as_view()),
    path("transactions/", views.TransactionListView.as_view()),
]
