"""Speech tools: phone sets, phoneme timing from TTS engines (espeak-ng, flite, festival), forced alignment."""
