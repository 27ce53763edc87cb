from django.core.management.base import BaseCommand, CommandError

from deployments import services
from models_catalog.models import ModelTask
from portal.api import ApplicationError
from tenants.selectors import tenant_by_slug


class Command(BaseCommand):
    help = ("Register a running OpenAI-compatible server (vLLM, llama.cpp, Ollama, …) as a "
            "deployment of a catalog model; prints the deployment id.")

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="catalog slug (created if missing)")
        parser.add_argument("--task", required=True, choices=ModelTask.values)
        parser.add_argument("--base-url", required=True,
                            help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
        parser.add_argument("--upstream-model", default="",
                            help="name the upstream serves it under (default: the slug)")
        parser.add_argument("--upstream-key-file", help="file holding the upstream's API key")
        parser.add_argument("--tenant", help="tenant slug for a dedicated deployment")
        parser.add_argument("--name", default="", help="display name of the deployment")

    def handle(self, *args, **options):
        actor = "system:endpoint_register"
        tenant = None
        if options["tenant"]:
            tenant = tenant_by_slug(options["tenant"])
            if tenant is None:
                raise CommandError(f"No tenant {options['tenant']!r}.")
        key = ""
        if options["upstream_key_file"]:
            try:
                with open(options["upstream_key_file"], encoding="utf-8") as handle:
                    key = handle.read().strip()
            except OSError as exc:
                raise CommandError(f"Can't read {options['upstream_key_file']}: "
                                   f"{exc.strerror}.") from exc
            except UnicodeDecodeError:
                raise CommandError(f"{options['upstream_key_file']} is not UTF-8 text: put "
                                   "the key in it as plain text.") from None
        try:
            deployment = services.external_endpoint_register(
                actor=actor, model_slug=options["model"], task=options["task"],
                base_url=options["base_url"], upstream_model=options["upstream_model"],
                upstream_api_key=key, tenant=tenant, name=options["name"])
        except ApplicationError as exc:
            raise CommandError(_by_field(exc.field_errors) or exc.message) from exc
        if deployment.status_reason:
            self.stderr.write(f"Registered, but the endpoint is not healthy: "
                              f"{deployment.status_reason}")
        self.stdout.write(str(deployment.pk))


def _by_field(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
