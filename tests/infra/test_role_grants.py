"""Each role may make every request its code path makes, checked on the source template without a
``sam build``: the stack's roles on a moto server that enforces their policies (the harness of
test_built_privacy.py), and the code run in this process with one role's credentials. For code paths
the built-function tests do not reach."""

from collections.abc import Iterator

import pytest

from services.analytics.erasure import AnalyticsErasure
from services.analytics.rows import decode, encode
from services.analytics.tables import TABLES, day_object_key, object_key
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.domain.models import CallRecord
from tests.infra.cfn import template
from tests.infra.test_built_handlers import Aws, enforcing_roles, moto_server
from tests.infra.test_built_privacy import ANALYTICS_BUCKET, ROLES, _stand_up

ERASED, OTHER = "conv_erased_caller_0001", "conv_other_caller_0002"
STARTED_AT = 1795516800  # 2026-11-24: a closed (merged) day
DT = "2026-11-24"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint:
        yield enforcing_roles(endpoint, _stand_up(template(), endpoint), ROLES)


def test_the_privacy_role_may_erase_a_caller_from_a_merged_day_that_holds_late_per_call_objects(aws: Aws) -> None:
    """DELETE /callers/{phone} rewrites each merged day the caller appears in, folding in the other
    calls' per-call objects written there since the merge (a redelivery, late audio, an import or a
    sync: the hourly compaction has not run yet), and then deletes those it folded in (DeleteObject,
    If-Match). Without s3:DeleteObject the erasure stopped there with a 503 before it reached the
    caller's transcripts, audio and index rows, and failed again on every retry until the compaction ran."""
    admin = aws.client("s3")
    for table in TABLES:
        day = [{"conversation_id": ERASED, "phone": "+16125550142"}]
        admin.put_object(Bucket=ANALYTICS_BUCKET, Key=day_object_key(table, DT), Body=encode(table, day))
        late = [{"conversation_id": OTHER, "phone": "+16125550199"}]
        admin.put_object(Bucket=ANALYTICS_BUCKET, Key=object_key(table, DT, OTHER), Body=encode(table, late))

    erasure = AnalyticsErasure(S3BlobStore(ANALYTICS_BUCKET, client=aws.client("s3", "PrivacyRole")))
    erased = erasure.erase("+16125550142", [CallRecord(ERASED, started_at=STARTED_AT)])

    assert erased == len(TABLES)
    for table in TABLES:
        rows = decode(admin.get_object(Bucket=ANALYTICS_BUCKET, Key=day_object_key(table, DT))["Body"].read())
        assert [row["conversation_id"] for row in rows] == [OTHER]
        # Folded into the day object and deleted: not counted twice.
        assert "Contents" not in admin.list_objects_v2(Bucket=ANALYTICS_BUCKET, Prefix=object_key(table, DT, OTHER))
