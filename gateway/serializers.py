from rest_framework import serializers

from gateway.models import ApiKey
from portal.dates import validate_supported_date
from portal.text import validate_display_name


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    key_prefix = serializers.CharField(source="display_prefix")
    owner = serializers.EmailField(source="owner.email", default=None, allow_null=True,
                                   help_text="The person who owns the key, if one does.")
    service_account = serializers.SerializerMethodField(
        help_text="The service account (`<provider>:<client id>`) that owns the key, if one "
                  "does.")
    status = serializers.CharField()
    allowed_models = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "key_prefix", "status", "owner", "service_account",
                  "allowed_models", "rpm_limit", "tpm_limit", "allowed_networks", "expires_at",
                  "last_used_at", "created_at", "revoked_at"]

    def get_service_account(self, key: ApiKey) -> str | None:
        return key.service_account or None


class ApiKeyCreatedSerializer(ApiKeyOutputSerializer):
    """The one response that carries the secret."""

    key = serializers.CharField()

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "key"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, validators=[validate_display_name])
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                           validators=[validate_supported_date])
    allowed_models = serializers.ListField(child=serializers.SlugField(), required=False,
                                           default=list)
    rpm_limit = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                         default=None)
    tpm_limit = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                         default=None)
    allowed_networks = serializers.ListField(child=serializers.CharField(max_length=64),
                                             required=False, default=list)


class ApiKeyRotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(min_value=0, max_value=30 * 86400, default=86400)


class ApiKeyBulkKeySerializer(ApiKeyOutputSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = ["tenant", *ApiKeyOutputSerializer.Meta.fields]


class ApiKeyBulkRevokeSerializer(serializers.Serializer):
    """A tenant admin's bulk revoke: every key of the tenant, or only a person's, or only
    those allowed to a model (both: keys matching both)."""

    owner = serializers.IntegerField(required=False, allow_null=True, default=None,
                                     help_text="Only this person's keys (a user id).")
    model = serializers.SlugField(required=False, allow_null=True, default=None,
                                  help_text="Only the keys that list this model among their "
                                            "allowed models.")
    dry_run = serializers.BooleanField(
        default=True, help_text="True (the default): list the keys, revoke nothing. Send "
                                "false to revoke them.")
    key_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, allow_null=True, default=None,
        help_text="Revoke only these of the matching keys: the ids a dry run listed.")


class ModelKeysBulkRevokeSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(default=True)
    key_ids = serializers.ListField(child=serializers.IntegerField(), required=False,
                                    allow_null=True, default=None)


class ApiKeyBulkResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    count = serializers.IntegerField()
    keys = ApiKeyBulkKeySerializer(many=True)
    audit_event = serializers.IntegerField(
        allow_null=True, help_text="Sequence number of the one audit event of the revoke.")
