from celery import shared_task

from tenants.emails import send_invitation


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: int, token: str) -> None:
    send_invitation(invitation_id=invitation_id, token=token)
