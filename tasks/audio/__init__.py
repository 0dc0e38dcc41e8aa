"""Meeting-audio steps: validate, normalise, denoise, vad, transcribe, diarise, align, notes."""
