#!/usr/bin/env bash
# The text and pretrained-CLIP tests against the newest transformers 4.x, in a second venv.
#
#   tools/test_transformers4.sh            # .venv-tf4: the lock file, with transformers 4.x and the
#                                          # tokenizers and hub client it needs instead of the locked ones
#   BASE_VENV=.venv tools/test_transformers4.sh   # quicker: a thin venv that installs only those three
#                                          # packages and takes everything else (torch...) from BASE_VENV
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${TF4_VENV:-.venv-tf4}
# transformers 4.57.6 needs tokenizers >=0.22,<=0.23 and huggingface-hub <1.0
PINS=("transformers==4.57.6" "tokenizers>=0.22,<0.23" "huggingface-hub>=0.34,<1.0")
TESTS=(tests/test_text.py tests/test_hf_clip.py tests/test_models.py tests/test_zeroshot.py)

if [ ! -x "$VENV/bin/python" ]; then
    if [ -n "${BASE_VENV:-}" ]; then
        "$BASE_VENV/bin/python" -m venv "$VENV"  # the same Python as the packages it borrows
        base_site=$("$BASE_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        echo "$base_site" > "$site/_base_venv.pth"  # after this venv's own packages on sys.path
        "$VENV/bin/python" -m pip install --quiet "${PINS[@]}"
        echo "$PWD/src" > "$site/_clipcourse_src.pth"  # this checkout's clipcourse, before the base venv's
    else
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        grep -v -i -E '^(transformers|tokenizers|huggingface[-_]hub)==' requirements-lock.txt > "$VENV/lock-tf4.txt"
        "$VENV/bin/python" -m pip install --quiet -r "$VENV/lock-tf4.txt" "${PINS[@]}"
        "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
    fi
fi
"$VENV/bin/python" -c 'import transformers, tokenizers, huggingface_hub as h; print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "huggingface_hub", h.__version__)'
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
