from django.urls import path

from cpchain.market.account import views

urlpatterns = [
    path("login/", views.LoginView.as_view()),
    path("confirm/", views.ConfirmView.as_view()),
    path("logout/", views.LogoutView.as_view()),
    path("profile/", views.ProfileView.as_view()),
    path("users/<str:address>/", views.PublicUserView.as_view()),
]
