from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "created_at", "actor_type", "actor_id", "actor_label", "tenant_id",
                  "tenant_slug", "action", "target_type", "target_id", "details", "client_ip",
                  "request_id", "prev_hash", "hash"]


class AuditEventPageSerializer(serializers.Serializer):
    results = AuditEventOutputSerializer(many=True)
    older_cursor = serializers.IntegerField(allow_null=True,
                                            help_text="Pass as `before` for older events.")
    newer_cursor = serializers.IntegerField(allow_null=True,
                                            help_text="Pass as `after` for newer events.")
