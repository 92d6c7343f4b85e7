"""Pydantic bodies of every REST endpoint: the one contract between server, agent and search.

One module per part of the API (base: limits and shared field types; devices; tables; measurements; networks;
calibration; jobs); everything is importable from here, as ``from hwnas.schemas import Device``.
"""

from __future__ import annotations

from hwnas.schemas.base import (  # noqa: F401
    NAME_PATTERN,
    ARCH_ID_PATTERN,
    INT32_MAX,
    MAX_KEYS,
    MAX_NETWORKS,
    MAX_SAMPLES,
    MAX_THREADS,
    MAX_KEY_LENGTH,
    MAX_JSON_DEPTH,
    MAX_JSON_BYTES,
    MAX_ARCH_BYTES,
    NO_NUL,
    Text,
    Int32,
    Threads,
    JobId,
    check_json,
    FreeJson,
    ArchDocument,
    KeyText,
    check_key,
    Strict,
    Role,
    Health,
)
from hwnas.schemas.devices import (  # noqa: F401
    DeviceInfo,
    IMPORT_FORMATS,
    ImportFormat,
    ExportFormat,
    MAX_IMPORT_BYTES,
    UnmappedEntry,
    ImportSource,
    FiniteFloat,
    TableFit,
    TableSource,
    LutImport,
    LutImportResult,
    TableInfo,
    DeviceThermal,
    Device,
)
from hwnas.schemas.calibration import (  # noqa: F401
    MAX_CALIBRATION_POINTS,
    CalibrationPoint,
    Calibration,
    LutCalibration,
    CalibrationDetail,
)
from hwnas.schemas.tables import (  # noqa: F401
    LatencySummary,
    LutEntry,
    Lut,
    LutSort,
    LUT_PAGE_MAX,
    LutRow,
    LutPage,
    LutQuery,
    LutQueryResult,
)
from hwnas.schemas.measurements import (  # noqa: F401
    LatencyStats,
    MeasurementResult,
    RunUpload,
    MeasurementBatch,
    MeasurementBatchResult,
)
from hwnas.schemas.networks import (  # noqa: F401
    NetworkSpec,
    MAX_PROFILED_OPERATORS,
    OperatorTiming,
    OperatorBreakdown,
    NetworkResult,
    NetworkMeasurementBatch,
    NetworkEntry,
    NetworkTable,
)
from hwnas.schemas.jobs import (  # noqa: F401
    JobState,
    JobCreate,
    JobCreated,
    PENDING_SHOWN,
    JobNetworkItem,
    JobNetworks,
    Job,
    JobClaim,
    JobClaimed,
    JobHeartbeat,
    JobFail,
    checked_keys,
    ErrorBody,
)
