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
