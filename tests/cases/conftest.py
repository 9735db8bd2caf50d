from __future__ import annotations

from dataclasses import dataclass

import pytest

from chengyun.org.models import Role, User

from .. import factories as f


@dataclass
class People:
    operator: User
    dispatcher: User
    water: User       # handler in the water department of district 100101 (the lead by routing)
    roads: User       # handler in the roads department of district 100101 (assisting by routing)
    supervisor: User
    inspector: User
    root: User


@pytest.fixture
def people(world, admin_user) -> People:
    city = world.areas[f.CITY]
    return People(
        operator=f.make_user(username="operator", role=Role.OPERATOR),
        dispatcher=f.make_user(username="dispatcher", role=Role.DISPATCHER, area=city),
        water=f.make_user(username="water", role=Role.HANDLER, department=world.dept("water", "100101")),
        roads=f.make_user(username="roads", role=Role.HANDLER, department=world.dept("roads", "100101")),
        supervisor=f.make_user(username="supervisor", role=Role.SUPERVISOR, area=city),
        inspector=f.make_user(username="inspector", role=Role.INSPECTOR, area=city),
        root=admin_user,
    )
