"""DNAS search tests: one thread (the machine is shared), a tiny search space, small Fashion-MNIST subsets."""

from tests.support.torch_tests import one_thread_seeded, tiny_space  # noqa: F401 - fixtures
