from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from tenants.models import Invitation


def send_invitation(*, invitation_id: int, token: str) -> None:
    invitation = Invitation.objects.select_related("tenant", "invited_by").filter(
        pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True).first()
    if invitation is None:
        return  # revoked or accepted before the mail went out: nothing to send
    context = {
        "invitation": invitation,
        "site_name": settings.SITE_NAME,
        "accept_url": settings.PORTAL_BASE_URL + reverse("invitation_accept", args=[token]),
    }
    send_mail(
        subject=f"[{settings.SITE_NAME}] You are invited to {invitation.tenant.name}",
        message=render_to_string("tenants/email/invitation.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )
