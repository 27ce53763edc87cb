"""Deployments: GPU clusters, tenant namespaces and the models running on them (KServe
InferenceServices or registered external endpoints), with their state machine."""
