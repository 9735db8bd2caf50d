"""Intake fixtures: the tiny world plus a second leaf category and a small
trained classifier (water leaks vs broken street lights)."""

from __future__ import annotations

import pytest

from chengyun.intake.classifier import train_and_store
from chengyun.org.models import Role

from .. import factories as f

WATER = [
    "水管爆裂 路面冒水", "自来水管漏水很严重", "路边水管破了一直在喷水", "小区门口水管爆了",
    "burst water main flooding the road", "water pipe leaking on the pavement", "a water main burst, water everywhere",
    "自来水管道破裂 地面积水", "水管漏水 已经流了一上午", "leaking water pipe near the bus stop",
]
LIGHTS = [
    "路灯不亮 晚上很黑", "路灯坏了好几天", "这一排路灯全灭了", "路灯一闪一闪的",
    "street light is out", "the street lamp is broken and flickering", "streetlights dark all along the road",
    "路灯杆歪了 灯也不亮", "晚上路灯不亮 行人看不清", "lamp post light not working at night",
]


@pytest.fixture
def intake_world(world):
    parent = world.categories["01"]
    lights = f.make_category(code="0102", parent=parent, deadline_hours=16, name="路灯")
    world.categories["0102"] = lights
    leaf = world.categories["0101"]
    leaf.cluster_reports = 3
    leaf.cluster_radius_m = 300
    leaf.cluster_window_minutes = 60
    leaf.self_dispose = True
    leaf.save()
    texts = WATER * 3 + LIGHTS * 3
    labels = ["0101"] * len(WATER) * 3 + ["0102"] * len(LIGHTS) * 3
    train_and_store(texts, labels, test_share=0.2, seed=1, note="test corpus")
    return world


@pytest.fixture
def staff(intake_world, admin_user):
    city = intake_world.areas[f.CITY]
    return {
        "operator": f.make_user(username="operator", role=Role.OPERATOR, area=city),
        "dispatcher": f.make_user(username="dispatcher", role=Role.DISPATCHER, area=city),
        "inspector": f.make_user(username="inspector", role=Role.INSPECTOR, area=city),
        "water": f.make_user(username="water", role=Role.HANDLER, department=intake_world.dept("water", "100101")),
        "leader": f.make_user(username="leader", role=Role.LEADER, area=city),
        "root": admin_user,
    }


@pytest.fixture
def sensor(intake_world):
    """A sensor platform's account: it may submit, and its role covers another district only."""
    return f.make_user(username="sensor-platform", role=Role.INSPECTOR, area=intake_world.areas["100104"])
