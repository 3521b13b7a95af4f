"""headway.hardware"""
