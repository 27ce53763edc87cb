"""REST endpoints for tenants, members and invitations, under the same permissions as the pages."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions as drf_permissions
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import permissions, selectors, services
from tenants.models import Tenant, TenantStatus
from tenants.permissions import PlatformPerm, TenantPerm
from tenants.serializers import (
    InvitationCreateSerializer,
    InvitationOutputSerializer,
    MembershipOutputSerializer,
    MembershipRoleSerializer,
    StatusChangeSerializer,
    TenantCreateSerializer,
    TenantOutputSerializer,
    TenantUpdateSerializer,
)


def require_platform_perm(request: Request, perm: PlatformPerm) -> None:
    if not permissions.has_platform_perm(request.user, perm):
        raise PermissionDenied("Only the platform operator's staff may do this.")


def tenant_for_api(request: Request, slug: str, perm: TenantPerm) -> Tenant:
    tenant = selectors.tenant_get(user=request.user, slug=slug)
    if not permissions.has_tenant_perm(request.user, tenant, perm):
        raise PermissionDenied("Your role in this tenant does not allow this.")
    return tenant


class TenantListApi(APIView):
    permission_classes = [drf_permissions.IsAuthenticated]

    @extend_schema(responses=TenantOutputSerializer(many=True), operation_id="tenants_list")
    def get(self, request: Request) -> Response:
        tenants = selectors.tenant_list(user=request.user, search=request.query_params.get("q", ""),
                                        status=request.query_params.get("status", ""))
        return Response(TenantOutputSerializer(tenants, many=True).data)

    @extend_schema(request=TenantCreateSerializer, responses={201: TenantOutputSerializer})
    def post(self, request: Request) -> Response:
        require_platform_perm(request, PlatformPerm.TENANTS_MANAGE)
        data = TenantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_create(actor=request.user, **data.validated_data)
        return Response(TenantOutputSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailApi(APIView):
    @extend_schema(responses=TenantOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.TENANT_VIEW)
        return Response(TenantOutputSerializer(tenant).data)

    @extend_schema(request=TenantUpdateSerializer, responses=TenantOutputSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.TENANT_VIEW)
        require_platform_perm(request, PlatformPerm.TENANTS_MANAGE)
        data = TenantUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_update(actor=request.user, tenant=tenant, **data.validated_data)
        return Response(TenantOutputSerializer(tenant).data)


class TenantStatusApi(APIView):
    target_status: str = ""

    @extend_schema(request=StatusChangeSerializer, responses=TenantOutputSerializer)
    def post(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.TENANT_VIEW)
        require_platform_perm(request, PlatformPerm.TENANTS_MANAGE)
        data = StatusChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_set_status(actor=request.user, tenant=tenant,
                                            status=self.target_status, **data.validated_data)
        return Response(TenantOutputSerializer(tenant).data)


class TenantSuspendApi(TenantStatusApi):
    target_status = TenantStatus.SUSPENDED


class TenantReactivateApi(TenantStatusApi):
    target_status = TenantStatus.ACTIVE


class MemberListApi(APIView):
    @extend_schema(responses=MembershipOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_VIEW)
        return Response(MembershipOutputSerializer(selectors.membership_list(tenant=tenant),
                                                   many=True).data)


class MemberDetailApi(APIView):
    @extend_schema(request=MembershipRoleSerializer, responses=MembershipOutputSerializer)
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_MANAGE)
        membership = selectors.membership_get(tenant=tenant, pk=pk)
        data = MembershipRoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_change_role(actor=request.user, membership=membership,
                                                     role=data.validated_data["role"])
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_MANAGE)
        services.membership_remove(actor=request.user,
                                   membership=selectors.membership_get(tenant=tenant, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListApi(APIView):
    @extend_schema(responses=InvitationOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_VIEW)
        return Response(InvitationOutputSerializer(selectors.invitation_list_open(tenant=tenant),
                                                   many=True).data)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_MANAGE)
        data = InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, _token = services.invitation_create(actor=request.user, tenant=tenant,
                                                        **data.validated_data)
        return Response(InvitationOutputSerializer(invitation).data,
                        status=status.HTTP_201_CREATED)


class InvitationDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        tenant = tenant_for_api(request, slug, TenantPerm.MEMBERS_MANAGE)
        invitation = get_object_or_404(selectors.invitation_list_open(tenant=tenant), pk=pk)
        services.invitation_revoke(actor=request.user, invitation=invitation)
        return Response(status=status.HTTP_204_NO_CONTENT)
