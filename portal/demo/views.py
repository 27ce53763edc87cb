from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from portal.demo.templatetags.demo_status import demo_model_status


@login_required
@require_GET
def status(request):
    """The demo model's progress card, polled by the catalog and playground pages."""
    context = demo_model_status(request.GET.get("for", "catalog"))
    if context["state"] is None:
        raise Http404("No demo model here.")
    return TemplateResponse(request, "demo/_status.html", context)
