from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway import selectors, services
from gateway.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyOutputSerializer,
    ApiKeyRotateSerializer,
)
from tenants import permissions
from tenants.api import tenant_for_api
from tenants.permissions import TenantPerm


def _created(key, token: str) -> dict:
    key.key = token
    return ApiKeyCreatedSerializer(key).data


class ApiKeyListApi(APIView):
    @extend_schema(responses=ApiKeyOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.KEYS_VIEW)
        return Response(ApiKeyOutputSerializer(selectors.apikey_list(tenant=tenant),
                                               many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def post(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.KEYS_CREATE)
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, token = services.apikey_create(actor=request.user, tenant=tenant,
                                            owner=request.user, **data.validated_data)
        return Response(_created(key, token), status=status.HTTP_201_CREATED)


class _KeyActionApi(APIView):
    def managed_key(self, request: Request, slug: str, pk: int):
        tenant = tenant_for_api(request, slug, TenantPerm.KEYS_VIEW)
        key = selectors.apikey_get(tenant=tenant, pk=pk)
        if not permissions.can_manage_key(request.user, key):
            raise PermissionDenied("Only the key's owner or a tenant admin may change it.")
        return key


class ApiKeyDetailApi(APIView):
    @extend_schema(responses=ApiKeyOutputSerializer)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.KEYS_VIEW)
        return Response(ApiKeyOutputSerializer(selectors.apikey_get(tenant=tenant, pk=pk)).data)


class ApiKeyRevokeApi(_KeyActionApi):
    @extend_schema(request=None, responses=ApiKeyOutputSerializer)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        key = services.apikey_revoke(actor=request.user,
                                     key=self.managed_key(request, slug, pk))
        return Response(ApiKeyOutputSerializer(key).data)


class ApiKeyRotateApi(_KeyActionApi):
    @extend_schema(request=ApiKeyRotateSerializer, responses=ApiKeyCreatedSerializer)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        key = self.managed_key(request, slug, pk)
        data = ApiKeyRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, token = services.apikey_rotate(
            actor=request.user, key=key,
            grace=timedelta(seconds=data.validated_data["grace_seconds"]))
        return Response(_created(key, token))
