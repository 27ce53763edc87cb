from django import template

from portal.demo.models import DEMO_STEPS, DemoPhase
from portal.demo.selectors import demo_state

register = template.Library()


@register.inclusion_tag("demo/_status.html")
def demo_model_status(audience: str = "catalog"):
    """The demo model's progress (DEBUG only; nothing in production or once it is ready)."""
    state = demo_state()
    if state is None:
        return {"state": None}
    steps = [{"label": step.label, "done": state.step_index > index or
              state.phase == DemoPhase.READY, "current": state.phase == step}
             for index, step in enumerate(DEMO_STEPS)]
    return {"state": state, "steps": steps, "audience": audience,
            "failed": state.phase == DemoPhase.FAILED,
            "active": state.phase not in (DemoPhase.READY, DemoPhase.FAILED, DemoPhase.STOPPED)}
