"""The usage query API: rollups by period, grouped by tenant, key, model or deployment."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing.usage.forms import MAX_DAYS, MAX_HOURLY_DAYS
from billing.usage.models import Granularity
from billing.usage.selectors import GROUPS, UsageScope, own_key_ids, usage_query
from portal.dates import validate_supported_date
from tenants import permissions
from tenants.api_access import PortalApi, TenantApi
from tenants.permissions import PlatformPerm, TenantPerm


class UsageQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Start (inclusive), ISO 8601",
                                      validators=[validate_supported_date])
    until = serializers.DateTimeField(help_text="End (exclusive), ISO 8601",
                                      validators=[validate_supported_date])
    granularity = serializers.ChoiceField(choices=Granularity.choices, default=Granularity.DAY)
    group_by = serializers.ListField(child=serializers.ChoiceField(choices=list(GROUPS)),
                                     required=False, default=list,
                                     help_text="Repeat or comma-separate: tenant, key, model, "
                                               "deployment")

    def to_internal_value(self, data):
        data = data.copy() if hasattr(data, "copy") else dict(data)
        if hasattr(data, "getlist"):
            values = [v for item in data.getlist("group_by") for v in item.split(",") if v]
            data.setlist("group_by", values)
        return super().to_internal_value(data)

    def validate(self, attrs):
        span = attrs["until"] - attrs["since"]
        if span <= timedelta(0):
            raise serializers.ValidationError({"until": ["Must be after since."]})
        limit = MAX_HOURLY_DAYS if attrs["granularity"] == Granularity.HOUR else MAX_DAYS
        if span > timedelta(days=limit):
            raise serializers.ValidationError({"until": [
                f"{attrs['granularity'].capitalize()} figures cover at most {limit} days."]})
        return attrs


class UsageRowSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField()
    tenant_id = serializers.IntegerField(required=False)
    api_key_id = serializers.IntegerField(required=False)
    model_id = serializers.IntegerField(required=False)
    model_slug = serializers.CharField(required=False)
    deployment_id = serializers.IntegerField(required=False)
    currency = serializers.CharField(allow_blank=True)
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField(
        help_text="Of the input tokens, those the model server read from its cache (charged "
                  "at the model's cached-input price).")
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField(
        help_text="Of the output tokens, those the model spent reasoning.")
    cost = serializers.DecimalField(max_digits=20, decimal_places=8)
    latency_avg_ms = serializers.IntegerField(allow_null=True)
    latency_p50_ms = serializers.IntegerField(allow_null=True)
    latency_p95_ms = serializers.IntegerField(allow_null=True)
    error_rate = serializers.FloatField()


def _query(view: PortalApi, request: Request, **scope) -> Response:
    params = UsageQuerySerializer(data=request.query_params)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    rows = usage_query(UsageScope(since=data["since"], until=data["until"],
                                  granularity=data["granularity"], **scope),
                       group_by=data["group_by"])
    return view.paginate(rows, UsageRowSerializer)


class TenantUsageApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.USAGE_VIEW}

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageRowSerializer(many=True),
                   operation_id="tenant_usage_query",
                   description="A tenant's usage by period (developers: their own keys).")
    def get(self, request: Request, slug: str) -> Response:
        tenant = self.tenant
        scope = {"tenant_id": tenant.pk}
        if not permissions.has_tenant_perm(request.user, tenant, TenantPerm.USAGE_VIEW_ALL):
            scope["api_key_ids"] = own_key_ids(user=request.user, tenant=tenant)
        return _query(self, request, **scope)


class PlatformUsageApi(PortalApi):
    platform_perms = {"GET": PlatformPerm.USAGE_VIEW}

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageRowSerializer(many=True),
                   operation_id="platform_usage_query",
                   description="Usage across tenants (MSP admins).")
    def get(self, request: Request) -> Response:
        return _query(self, request)
