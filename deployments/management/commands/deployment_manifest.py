from django.core.management.base import BaseCommand, CommandError

from deployments.backends import manifest_yaml
from deployments.models import Deployment
from models_catalog.selectors import RegistryNotConfigured


class Command(BaseCommand):
    help = ("Print the YAML the portal applies for a deployment — its InferenceService, or its "
            "preset and LLMInferenceServices as one List — for GitOps (Argo CD, Flux).")

    def add_arguments(self, parser):
        parser.add_argument("deployment_id", type=int)

    def handle(self, *args, **options):
        deployment = Deployment.objects.select_related(
            "model", "tenant", "cluster", "version", "canary_version", "llm_preset").filter(
            pk=options["deployment_id"]).first()
        if deployment is None:
            raise CommandError(f"No deployment {options['deployment_id']}.")
        try:
            body = manifest_yaml(deployment)
        except RegistryNotConfigured as exc:
            raise CommandError(exc.message) from None
        if not body:
            raise CommandError(f"Deployment {deployment.pk} is an external endpoint: the portal "
                               "applies no manifest for it.")
        self.stdout.write(body, ending="")
