"""REST endpoints for tenants, members and invitations, under the same permissions as the pages."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from tenants import selectors, services
from tenants.api_access import PortalApi, TenantApi
from tenants.models import TenantStatus
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


class TenantListApi(PortalApi):
    # Everyone signed in lists the tenants they can see.
    platform_perms = {"GET": None, "POST": PlatformPerm.TENANTS_MANAGE}

    @extend_schema(responses=TenantOutputSerializer(many=True), operation_id="tenants_list")
    def get(self, request: Request) -> Response:
        tenants = selectors.tenant_list(user=request.user, search=request.query_params.get("q", ""),
                                        status=request.query_params.get("status", ""))
        return self.paginate(tenants, TenantOutputSerializer)

    @extend_schema(request=TenantCreateSerializer, responses={201: TenantOutputSerializer})
    def post(self, request: Request) -> Response:
        tenant = services.tenant_create(actor=request.user,
                                        **self.validated(TenantCreateSerializer))
        return Response(TenantOutputSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.TENANT_VIEW, "PATCH": TenantPerm.TENANT_VIEW}
    platform_perms = {"PATCH": PlatformPerm.TENANTS_MANAGE}

    @extend_schema(responses=TenantOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(TenantOutputSerializer(self.tenant).data)

    @extend_schema(request=TenantUpdateSerializer, responses=TenantOutputSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        data = self.validated(TenantUpdateSerializer, partial=True)
        tenant = services.tenant_update(actor=request.user, tenant=self.tenant,
                                        **data)
        return Response(TenantOutputSerializer(tenant).data)


class TenantStatusApi(TenantApi):
    tenant_perms = {"POST": TenantPerm.TENANT_VIEW}
    platform_perms = {"POST": PlatformPerm.TENANTS_MANAGE}
    target_status: str = ""

    @extend_schema(request=StatusChangeSerializer, responses=TenantOutputSerializer)
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(StatusChangeSerializer)
        tenant = services.tenant_set_status(actor=request.user, tenant=self.tenant,
                                            status=self.target_status, **data)
        return Response(TenantOutputSerializer(tenant).data)


class TenantSuspendApi(TenantStatusApi):
    target_status = TenantStatus.SUSPENDED


class TenantReactivateApi(TenantStatusApi):
    target_status = TenantStatus.ACTIVE


class MemberListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.MEMBERS_VIEW}

    @extend_schema(responses=MembershipOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.membership_list(tenant=self.tenant),
                             MembershipOutputSerializer)


class MemberDetailApi(TenantApi):
    tenant_perms = {"PATCH": TenantPerm.MEMBERS_MANAGE, "DELETE": TenantPerm.MEMBERS_MANAGE}

    @extend_schema(request=MembershipRoleSerializer, responses=MembershipOutputSerializer)
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        membership = selectors.membership_get(tenant=self.tenant, pk=pk)
        data = self.validated(MembershipRoleSerializer)
        membership = services.membership_change_role(actor=request.user, membership=membership,
                                                     role=data["role"])
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        services.membership_remove(actor=request.user,
                                   membership=selectors.membership_get(tenant=self.tenant, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListApi(TenantApi):
    tenant_perms = {"GET": TenantPerm.MEMBERS_VIEW, "POST": TenantPerm.MEMBERS_MANAGE}

    @extend_schema(responses=InvitationOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.paginate(selectors.invitation_list_open(tenant=self.tenant),
                             InvitationOutputSerializer)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationOutputSerializer})
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(InvitationCreateSerializer)
        invitation, _token = services.invitation_create(actor=request.user, tenant=self.tenant,
                                                        **data)
        return Response(InvitationOutputSerializer(invitation).data,
                        status=status.HTTP_201_CREATED)


class InvitationDetailApi(TenantApi):
    tenant_perms = {"DELETE": TenantPerm.MEMBERS_MANAGE}

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        invitation = get_object_or_404(selectors.invitation_list_open(tenant=self.tenant), pk=pk)
        services.invitation_revoke(actor=request.user, invitation=invitation)
        return Response(status=status.HTTP_204_NO_CONTENT)
