"""Every write of the catalog (models, versions and their supply-chain gate, prices,
entitlements), one import away.

`gate` holds the version state machine, version creation, retries and beat's recovery;
`uploads` how an image comes in (a reference, or a resumable upload and its push); `scan` the
scan; `approval` review, four-eyes approval and publication; `signatures` the recorded checks
of a published version's signature; `lineage` base models, datasets and the signed export of
provenance answers; `lifecycle` deprecation and retirement; `catalog` a model and its card;
`annex_xii` its EU AI Act Annex XII information; `entitlements` and `prices` what their names
say.
"""

from models_catalog.services.annex_xii import ANNEX_XII_FIELDS, model_update_annex_xii
from models_catalog.services.approval import version_approve, version_reject, version_submit
from models_catalog.services.catalog import CARD_FIELDS, model_create, model_update_card
from models_catalog.services.entitlements import model_set_entitlements
from models_catalog.services.gate import (
    MAX_SCAN_ATTEMPTS,
    TRANSIENT_ERRORS,
    ImageRefused,
    landing_repository,
    trusted_repository,
    version_create,
    version_retry,
    versions_recover_stale,
)
from models_catalog.services.lifecycle import (
    LIFECYCLE_ACTIONS,
    model_set_lifecycle,
    version_set_lifecycle,
)
from models_catalog.services.lineage import (
    Lineage,
    provenance_export,
    version_by_reference,
    version_set_lineage,
)
from models_catalog.services.prices import price_set
from models_catalog.services.scan import version_scan
from models_catalog.services.signatures import (
    version_signature_verify,
    version_verify_for_deploy,
)
from models_catalog.services.uploads import (
    UploadOffsetMismatch,
    upload_chunk_append,
    upload_complete,
    upload_session_create,
    version_push_upload,
    version_register_reference,
)
from models_catalog.signing import APPROVAL_ARTIFACT_TYPE

__all__ = [
    "ANNEX_XII_FIELDS", "APPROVAL_ARTIFACT_TYPE", "CARD_FIELDS", "LIFECYCLE_ACTIONS",
    "MAX_SCAN_ATTEMPTS", "TRANSIENT_ERRORS", "ImageRefused", "Lineage", "provenance_export",
    "version_by_reference", "version_set_lineage", "UploadOffsetMismatch", "landing_repository",
    "model_create", "model_set_entitlements", "model_set_lifecycle", "model_update_annex_xii",
    "model_update_card",
    "price_set", "trusted_repository", "upload_chunk_append", "upload_complete",
    "upload_session_create", "version_approve", "version_create", "version_push_upload",
    "version_register_reference", "version_reject", "version_retry", "version_scan",
    "version_set_lifecycle", "version_signature_verify", "version_submit",
    "version_verify_for_deploy", "versions_recover_stale",
]
