"""Licence and intended-use text the GUI shows once and in its about box."""

MEDPLIB_NOTICE = (
    "MedPLIB-7b-2e (Huang et al., \"Towards a Multimodal Large Language Model with Pixel-Level "
    "Insight for Biomedicine\", AAAI 2025) is a research model. It is intended for research "
    "only: it is not a medical device, it has not been validated for clinical use, and its "
    "answers and masks must not be used for diagnosis, treatment or any other clinical "
    "decision. Answers can be wrong or invented; masks are proposals to be checked by an "
    "expert.\n\n"
    "The weights are distributed by their authors under their own licence terms (see the "
    "model card of Huangxs/MedPLIB-7b-2e). They derive from LLaVA-1.5 / Vicuna (LLaMA 2 "
    "family), CLIP ViT-L/14-336 and SAM-Med2D, whose licences also apply. MedPLIB Studio does "
    "not ship or download any of these weights."
)
