from __future__ import annotations

from rest_framework import serializers


class StatementTotalSerializer(serializers.Serializer):
    """What a statement adds up to in one currency."""

    currency = serializers.CharField()
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField(
        help_text="Of the input tokens, those the model server read from its cache.")
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField(
        help_text="Of the output tokens, those the model spent reasoning.")
    amount = serializers.DecimalField(max_digits=20, decimal_places=8)


class StatementLineSerializer(StatementTotalSerializer):
    """One line of a statement: a model's usage in a month, at the prices then in force (the
    counts and amount as in the totals)."""

    kind = serializers.CharField()
    usage_month = serializers.DateField(source="source_period")
    model = serializers.CharField(source="model_slug")
    input_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6,
                                                       allow_null=True)
    output_price_per_million = serializers.DecimalField(max_digits=12, decimal_places=6,
                                                        allow_null=True)
    cached_input_price_per_million = serializers.DecimalField(
        max_digits=12, decimal_places=6, allow_null=True,
        help_text="Price of a million cached input tokens when the usage was served.")


class StatementSerializer(serializers.Serializer):
    month = serializers.SerializerMethodField()
    closed = serializers.BooleanField()
    closed_at = serializers.DateTimeField(allow_null=True)
    totals = StatementTotalSerializer(many=True)

    def get_month(self, data) -> str:
        return f"{data.period_start:%Y-%m}"


class StatementDetailSerializer(StatementSerializer):
    lines = StatementLineSerializer(many=True)
