from django.urls import path

from cpchain.market.user_data import views

urlpatterns = [
    path("uploaded_files/", views.UploadedFiles.as_view()),
    path("uploaded_files/<int:key>/", views.UploadedFileItem.as_view()),
    path("purchased_files/", views.PurchasedFiles.as_view()),
    path("purchased_files/<int:key>/", views.PurchasedFileItem.as_view()),
    path("bookmarks/", views.Bookmarks.as_view()),
    path("bookmarks/<str:key>/", views.BookmarkItem.as_view()),
    path("version/", views.VersionView.as_view()),
    path("pull_all/", views.PullAllView.as_view()),
]
