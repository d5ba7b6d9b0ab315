from django.apps import AppConfig


class CommentConfig(AppConfig):
    name = "cpchain.market.comment"
    label = "comment"
