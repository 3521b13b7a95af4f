"""headway.reward"""
