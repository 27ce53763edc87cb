from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from gateway import selectors, services
from gateway.serializers import (
    ApiKeyBulkResultSerializer,
    ApiKeyBulkRevokeSerializer,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyOutputSerializer,
    ApiKeyRotateSerializer,
    ModelKeysBulkRevokeSerializer,
)
from models_catalog.selectors import model_get_for_tenant, model_get_for_user
from tenants import permissions
from tenants.api_access import PortalApi, TenantApi
from tenants.permissions import PlatformPerm, TenantPerm


def _created(key, token: str) -> dict:
    key.key = token
    return ApiKeyCreatedSerializer(key).data


class ApiKeyListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.KEYS_VIEW, "POST": TenantPerm.KEYS_CREATE}

    @extend_schema(responses=ApiKeyOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.apikey_list(tenant=self.tenant), ApiKeyOutputSerializer)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(ApiKeyCreateSerializer)
        key, token = services.apikey_create(actor=request.user, tenant=self.tenant,
                                            owner=request.user, **data)
        return Response(_created(key, token), status=status.HTTP_201_CREATED)


class CanManageKey(BasePermission):
    """Tenant admins manage every key of their tenant, developers their own."""

    message = "Only the key's owner or a tenant admin may change it."

    def has_object_permission(self, request: Request, view, obj) -> bool:
        return permissions.can_manage_key(request.user, obj)


class _KeyActionApi(TenantApi):
    permission_classes = [*TenantApi.permission_classes, CanManageKey]
    tenant_perms = {"POST": TenantPerm.KEYS_VIEW}

    def managed_key(self, request: Request, pk: int):
        key = selectors.apikey_get(tenant=self.tenant, pk=pk)
        self.check_object_permissions(request, key)
        return key


class ApiKeyDetailApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.KEYS_VIEW}

    @extend_schema(responses=ApiKeyOutputSerializer)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(ApiKeyOutputSerializer(selectors.apikey_get(tenant=self.tenant,
                                                                    pk=pk)).data)


class ApiKeyRevokeApi(_KeyActionApi):
    @extend_schema(request=None, responses=ApiKeyOutputSerializer)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        key = services.apikey_revoke(actor=request.user,
                                     key=self.managed_key(request, pk))
        return Response(ApiKeyOutputSerializer(key).data)


class ApiKeyRotateApi(_KeyActionApi):
    @extend_schema(request=ApiKeyRotateSerializer, responses=ApiKeyCreatedSerializer)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        key = self.managed_key(request, pk)
        data = self.validated(ApiKeyRotateSerializer)
        key, token = services.apikey_rotate(
            actor=request.user, key=key,
            grace=timedelta(seconds=data["grace_seconds"]))
        return Response(_created(key, token))


def _bulk_result(keys, event, dry_run: bool) -> dict:
    return ApiKeyBulkResultSerializer({
        "dry_run": dry_run, "count": len(keys), "keys": keys,
        "audit_event": event.seq if event else None}).data


class ApiKeyBulkRevokeApi(TenantApi):
    tenant_perms = {"POST": TenantPerm.KEYS_MANAGE_ALL}

    @extend_schema(request=ApiKeyBulkRevokeSerializer, responses=ApiKeyBulkResultSerializer)
    def post(self, request: Request, slug: str) -> Response:
        """Revoke every key of the tenant, of one person, or allowed to one model (tenant
        admins). Lists them only, unless `dry_run` is false."""
        tenant = self.tenant
        data = self.validated(ApiKeyBulkRevokeSerializer)
        values = data
        owner = (selectors.key_owner_get(tenant=tenant, pk=values["owner"])
                 if values["owner"] is not None else None)
        model = (model_get_for_tenant(tenant=tenant, slug=values["model"])
                 if values["model"] else None)
        keys, event = services.apikeys_bulk_revoke(
            actor=request.user, tenant=tenant, owner=owner, model=model,
            key_ids=values["key_ids"], dry_run=values["dry_run"])
        return Response(_bulk_result(keys, event, values["dry_run"]))


class ModelKeysBulkRevokeApi(PortalApi):
    platform_perms = {"POST": PlatformPerm.MODELS_MANAGE}

    @extend_schema(request=ModelKeysBulkRevokeSerializer, responses=ApiKeyBulkResultSerializer)
    def post(self, request: Request, slug: str) -> Response:
        """Revoke every key, in every tenant, that lists this model among its allowed models
        (MSP admins). Lists them only, unless `dry_run` is false."""
        model = model_get_for_user(user=request.user, tenant=None, slug=slug)
        data = self.validated(ModelKeysBulkRevokeSerializer)
        values = data
        keys, event = services.apikeys_bulk_revoke(
            actor=request.user, tenant=None, model=model, key_ids=values["key_ids"],
            dry_run=values["dry_run"])
        return Response(_bulk_result(keys, event, values["dry_run"]))
