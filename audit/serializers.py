import base64

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.chain import canonical_time, checkpoint_payload
from audit.models import AuditCheckpoint, AuditEvent, CheckpointTimestamp


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


class CheckpointTimestampSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckpointTimestamp
        fields = ["time", "tsa", "attempts", "next_attempt_at", "last_error"]
        extra_kwargs = {
            "time": {"help_text": "The authority's time (genTime); null until timestamped."},
            "tsa": {"help_text": "Subject of the certificate that signed the timestamp."},
            "next_attempt_at": {"help_text": "When the authority is asked again."},
        }


class CheckpointOutputSerializer(serializers.ModelSerializer):
    timestamp_status = serializers.SerializerMethodField(
        help_text="timestamped; not_yet_timestamped (the authority has not answered yet, it is "
                  "asked again with backoff); none (made while timestamps were off).")
    timestamp = serializers.SerializerMethodField()

    class Meta:
        model = AuditCheckpoint
        fields = ["last_seq", "head_hash", "created_at", "key_id", "signature",
                  "timestamp_status", "timestamp"]

    def get_timestamp_status(self, checkpoint: AuditCheckpoint) -> str:
        stamp = checkpoint.timestamp_or_none
        if stamp is None:
            return "none"
        return "timestamped" if stamp.time is not None else "not_yet_timestamped"

    @extend_schema_field(CheckpointTimestampSerializer(allow_null=True))
    def get_timestamp(self, checkpoint: AuditCheckpoint) -> dict | None:
        stamp = checkpoint.timestamp_or_none
        return CheckpointTimestampSerializer(stamp).data if stamp is not None else None


class CheckpointDetailSerializer(CheckpointOutputSerializer):
    payload = serializers.SerializerMethodField(
        help_text="The exact bytes (UTF-8 JSON) the signature and the timestamp cover.")
    timestamp_response = serializers.SerializerMethodField(
        help_text="Base64 of the authority's RFC 3161 answer (DER, as `openssl ts -reply` "
                  "writes it); null until timestamped.")

    class Meta(CheckpointOutputSerializer.Meta):
        fields = [*CheckpointOutputSerializer.Meta.fields, "payload", "timestamp_response"]

    def get_payload(self, checkpoint: AuditCheckpoint) -> str:
        return checkpoint_payload(last_seq=checkpoint.last_seq, head_hash=checkpoint.head_hash,
                                  created_at=canonical_time(checkpoint.created_at)).decode()

    def get_timestamp_response(self, checkpoint: AuditCheckpoint) -> str | None:
        stamp = checkpoint.timestamp_or_none
        if stamp is None or stamp.response is None:
            return None
        return base64.b64encode(bytes(stamp.response)).decode()


class CheckpointPageSerializer(serializers.Serializer):
    results = CheckpointOutputSerializer(many=True)
    older_cursor = serializers.IntegerField(allow_null=True,
                                            help_text="Pass as `before` for older checkpoints.")
