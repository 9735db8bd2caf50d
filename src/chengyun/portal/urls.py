from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("report/", views.report, name="report"),
    path("report/received/<str:number>/", views.received, name="received"),
    path("track/", views.track, name="track"),
    path("track/<str:number>/", views.track_detail, name="track_detail"),
    path("text-size/", views.text, name="text"),
    path("messages/stop/<str:token>/", views.stop_messages, name="stop_messages"),
]
