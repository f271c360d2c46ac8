"""MIDI plugin: melodies that follow the words, written as MIDI and rendered to audio."""
