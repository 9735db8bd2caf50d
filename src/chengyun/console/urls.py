from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("console/", views.queue_view, name="queue"),
    path("console/new/", views.new_case, name="new_case"),
    path("console/cases/<str:number>/", views.case_detail, name="case"),
    path("console/cases/<str:number>/act/<str:action>/", views.case_action, name="case_action"),
]
