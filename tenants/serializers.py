from rest_framework import serializers

from portal.text import validate_display_name
from tenants.models import Invitation, Membership, Tenant, TenantRole


class TenantOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = [
            "slug", "name", "status", "contact_email", "jurisdiction", "max_gpus",
            "max_api_keys", "rate_limit_rpm", "rate_limit_tpm", "default_monthly_budget",
            "budget_currency", "created_at", "updated_at",
        ]


class TenantCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=40)
    name = serializers.CharField(max_length=200, validators=[validate_display_name])
    contact_email = serializers.EmailField()
    jurisdiction = serializers.CharField(max_length=8)
    max_gpus = serializers.IntegerField(min_value=0, required=False, default=0)
    max_api_keys = serializers.IntegerField(min_value=0, required=False, default=20)
    rate_limit_rpm = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                              default=None)
    rate_limit_tpm = serializers.IntegerField(min_value=1, required=False, allow_null=True,
                                              default=None)
    default_monthly_budget = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True,
        default=None)
    budget_currency = serializers.CharField(max_length=3, required=False, default="EUR")


class TenantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, validators=[validate_display_name])
    contact_email = serializers.EmailField(required=False)
    jurisdiction = serializers.CharField(max_length=8, required=False)
    max_gpus = serializers.IntegerField(min_value=0, required=False)
    max_api_keys = serializers.IntegerField(min_value=0, required=False)
    rate_limit_rpm = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    rate_limit_tpm = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    default_monthly_budget = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True)
    budget_currency = serializers.CharField(max_length=3, required=False)


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class MembershipOutputSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.get_full_name")

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "source", "created_at"]


class MembershipRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=TenantRole.choices)


class InvitationOutputSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", default=None)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=TenantRole.choices)
