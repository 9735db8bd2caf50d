from django.urls import path

from . import intake_views, views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("console/", views.queue_view, name="queue"),
    path("console/new/", intake_views.new_case, name="new_case"),
    path("console/hotline/", intake_views.hotline, name="hotline"),
    path("console/hotline/suggest/", intake_views.hotline_suggest, name="hotline_suggest"),
    path("console/inspect/", intake_views.inspect, name="inspect"),
    path("console/photos/<int:pk>/", intake_views.photo, name="photo"),
    path("console/cases/<str:number>/", views.case_detail, name="case"),
    path("console/cases/<str:number>/act/<str:action>/", views.case_action, name="case_action"),
    path("console/cases/<str:number>/reclassify/", intake_views.reclassify, name="reclassify"),
    path("console/cases/<str:number>/relocate/", intake_views.relocate, name="relocate"),
    path("console/cases/<str:number>/cluster/merge/", intake_views.merge_cluster, name="merge_cluster"),
    path("console/cases/<str:number>/duplicates/<int:pk>/", intake_views.decide, name="decide_duplicate"),
    path("console/cases/<str:number>/reports/<str:report_number>/reveal/", intake_views.reveal_contact,
         name="reveal_contact"),
    path("console/cases/<str:number>/reports/<str:report_number>/detach/", intake_views.detach, name="detach_report"),
]
