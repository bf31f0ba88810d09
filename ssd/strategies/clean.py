"""``clean`` (reference): train on clean images, ``CE(g(x), y)``; evaluated on noisy ones.

Shows how far a classifier that never saw noise collapses, and is the clean teacher of
``student_teacher`` and the frozen classifier of ``denoise``/``joint``. It is ``vanilla``
without training noise: with ``trains_on_noise = False`` the base hands it ``x`` as ``x_noisy``.
"""

from __future__ import annotations

from ssd.strategies.vanilla import Vanilla


class Clean(Vanilla):
    trains_on_noise = False
