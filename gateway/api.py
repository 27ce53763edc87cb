from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from gateway import selectors, services
from gateway.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyOutputSerializer,
    ApiKeyRotateSerializer,
)
from tenants import permissions
from tenants.api_access import TenantApi
from tenants.permissions import TenantPerm


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
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, token = services.apikey_create(actor=request.user, tenant=self.tenant,
                                            owner=request.user, **data.validated_data)
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
        data = ApiKeyRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, token = services.apikey_rotate(
            actor=request.user, key=key,
            grace=timedelta(seconds=data.validated_data["grace_seconds"]))
        return Response(_created(key, token))
