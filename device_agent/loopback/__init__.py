"""The loopback phone: a fake Android phone that speaks real ADB, for tests and for trying the agent.

Nothing of the agent imports this package; the agent drives it exactly as it drives a phone.

* ``adbd`` — the daemon: ADB wire protocol v1 on 127.0.0.1 (``wire``), optional RSA auth (``auth``),
  ``shell:``/``exec:`` services and ``sync:`` (``sync``);
* ``sandbox`` — the phone's filesystem inside a host folder, commands run with Android's ``mksh``;
* ``fakephone`` — what the phone is (props, CPU clusters, thermal state, fault knobs), and its programs:
  toybox, one-true-awk, and the benchmark programs installed in the agent's work folder;
* ``standins`` — those benchmark programs: host stand-ins with the real programs' flags and output.

Start one with ``device-agent loopback-device --port P --root DIR`` (docs/device-agent.md).
"""
