"""What the SFT (``model.sft``) and RL (``rl.trainer``) loops share: the selective output head
(:mod:`.head`), the accelerator and precision (:mod:`.accelerator`), the optimiser schedule
(:mod:`.schedule`), the RNG state of every process (:mod:`.rng`), the resumable work directory
(:mod:`.workdir`) and the optimiser / run fields of their configs (:mod:`.fields`). Imports
nothing from Kedro (and nothing heavy at package level)."""

#: ``autocast`` settings of the training loops: auto (bf16 on CUDA with bf16 support) | bf16 | off.
AUTOCAST_MODES = ("auto", "bf16", "off")
#: ``resume`` settings: auto (a compatible checkpoint in work_dir, else fresh) | never | require.
RESUME_MODES = ("auto", "never", "require")
