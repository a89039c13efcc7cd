"""The Print Management SOP classes (PS3.4 Annex H), their well-known instance, action and event types, and
the defined terms of the attributes the print SCU sends and the print SCP checks (PS3.3 C.13)."""

from __future__ import annotations

#: Meta SOP classes (PS3.4 H.3.1): what a print SCU proposes and a printer accepts.
GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
META_NAMES = {GRAYSCALE_META: "Basic Grayscale Print Management", COLOR_META: "Basic Color Print Management"}

#: The SOP classes under them (PS3.4 H.4).
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
#: Printer (H.4.6.4) and its well-known instance (H.4.6.5). The eNTEGRA seed prints the Printer SOP class as
#: 1.2.840.10008.5.1.1.14 (000 L7248, L7892), which is the Print Job SOP class: read as the standard's .16.
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
#: Optional SOP classes outside the meta classes, each negotiated on its own context.
PRINT_JOB = "1.2.840.10008.5.1.1.14"
PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"

IMAGE_BOX_OF = {GRAYSCALE_META: GRAYSCALE_IMAGE_BOX, COLOR_META: COLOR_IMAGE_BOX}
#: The Basic ... Image Sequence of each image box class (PS3.4 H.4.3.1.2.1.1, H.4.3.2.2.1.1).
IMAGE_SEQUENCE_OF = {GRAYSCALE_IMAGE_BOX: "BasicGrayscaleImageSequence", COLOR_IMAGE_BOX: "BasicColorImageSequence"}
CLASS_NAMES = {
    FILM_SESSION: "Film Session",
    FILM_BOX: "Film Box",
    GRAYSCALE_IMAGE_BOX: "Grayscale Image Box",
    COLOR_IMAGE_BOX: "Color Image Box",
    PRINTER: "Printer",
    PRINT_JOB: "Print Job",
    PRESENTATION_LUT: "Presentation LUT",
}

#: N-ACTION Action Type ID of Film Session and Film Box (PS3.4 H.4.1.2.4, H.4.2.2.4).
ACTION_PRINT = 1
#: N-EVENT-REPORT Event Type IDs: Printer (H.4.6.2.1) and Print Job (H.4.5.2.1).
PRINTER_EVENTS = {1: "NORMAL", 2: "WARNING", 3: "FAILURE"}
PRINT_JOB_EVENTS = {1: "PENDING", 2: "PRINTING", 3: "DONE", 4: "FAILURE"}

# --- defined terms (PS3.3 C.13.1, C.13.3, C.13.5) -----------------------------------------------------------
PRINT_PRIORITIES = ("HIGH", "MED", "LOW")
MEDIUM_TYPES = ("PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM", "MAMMO BLUE FILM")
#: Film Destination: MAGAZINE, PROCESSOR, or BIN_i (checked with :func:`valid_destination`).
FILM_DESTINATIONS = ("MAGAZINE", "PROCESSOR")
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
MAGNIFICATION_TYPES = ("REPLICATE", "BILINEAR", "CUBIC", "NONE")
POLARITIES = ("NORMAL", "REVERSE")
DECIMATE_CROP = ("DECIMATE", "CROP", "FAIL")
TRIM = ("YES", "NO")
RESOLUTIONS = ("STANDARD", "HIGH")
#: Presentation LUT Shape for print (PS3.3 C.11.4): IDENTITY, or LIN OD (P-values linear in optical density).
PRESENTATION_LUT_SHAPES = ("IDENTITY", "LIN OD")


def valid_destination(value: str) -> bool:
    """MAGAZINE, PROCESSOR or BIN_i (PS3.3 C.13.1)."""
    return value in FILM_DESTINATIONS or (value.startswith("BIN_") and value[4:].isdigit())


def valid_density(value: str) -> bool:
    """Border Density and Empty Image Density: BLACK, WHITE, or hundredths of OD (PS3.3 C.13.3)."""
    return value in ("BLACK", "WHITE") or value.isdigit()
