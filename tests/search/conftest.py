"""Search-space tests: one thread (the machine is shared), a fixed seed."""

from tests.support.torch_tests import one_thread_seeded  # noqa: F401 - fixture
