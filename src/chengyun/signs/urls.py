from django.urls import path

from . import views

app_name = "signs"

urlpatterns = [
    path("", views.board, name="board"),
    path("indicators/<str:code>/", views.indicator, name="indicator"),
    path("warnings/<int:pk>/acknowledge/", views.acknowledge_warning, name="acknowledge"),
]
