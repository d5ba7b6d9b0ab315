from django.urls import path

from cpchain.market.proxy import views

urlpatterns = [
    path("proxies/", views.ProxyListView.as_view()),
    path("proxies/<str:address>/", views.ProxyDetailView.as_view()),
]
